# Copyright (c) mmakd contributors. All rights reserved.
"""Where AKD's Avatars draw their randomness from."""
import hashlib
from typing import Any, Tuple

import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub

__all__ = ['AvatarSeeds', 'seeded_generator']


class AvatarSeeds:
    """Generators seeded by (seed, iteration, rank, call in the iteration).

    Avatars (AKD, Zhang et al., ACM MM 2023, https://arxiv.org/abs/2305.02722)
    are drawn from such a generator, not from the global stream: the same
    seed gives the same Avatars, after a resume too, and ranks draw
    different Avatars. The seed is the message hub's ``'seed'`` info when
    something sets it, else ``torch.initial_seed()``, which MMEngine's
    runner sets from ``randomness.seed``. The iteration is the message
    hub's ``'iter'`` under a runner, else a count of the calls.
    """

    def __init__(self) -> None:
        #: ``(iteration or None, calls)``: the last iteration seen and the
        #: calls counted in it (or in all, without a runner).
        self.state: Tuple[Any, int] = (None, 0)

    def generator(self, device: torch.device) -> torch.Generator:
        """The next call's generator, on ``device``."""
        hub = MessageHub.get_current_instance()
        seed = hub.get_info('seed')
        if seed is None:
            seed = torch.initial_seed()
        iteration = hub.get_info('iter')
        if iteration is None:
            iteration = self.state[1]
            self.state = (None, iteration + 1)
            call = 0
        else:
            last_iter, count = self.state
            call = count if last_iter == iteration else 0
            self.state = (iteration, call + 1)
        return seeded_generator(f'akd/{seed}/{iteration}/{get_rank()}/{call}',
                                device)


def seeded_generator(key: str, device: torch.device) -> torch.Generator:
    """A generator on ``device`` seeded by a hash of ``key``: the same key,
    the same stream, whatever else was drawn before."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest, 'little') >> 1)
    return generator
