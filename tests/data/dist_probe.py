# Copyright (c) mmakd contributors. All rights reserved.
"""Test-only hook: what each rank saw and holds after a distributed run.

Writes ``<out_dir>/rank<r>.json`` with the Avatar weights the rank's
distiller computed at every iteration (MMEngine logs only rank 0's) and a
digest of the student's weights at the end.
"""
import hashlib
import json
import os.path as osp

from mmengine.dist import get_rank
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmakd.registry import HOOKS


@HOOKS.register_module()
class DistProbeHook(Hook):

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.weights = []

    def before_run(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        distiller = model.distiller
        original = distiller.compute_distill_losses

        def recording():
            losses = original()
            self.weights.append({
                k: float(v)
                for k, v in losses.items() if k.startswith('akd.')
            })
            return losses

        distiller.compute_distill_losses = recording
        self.student = model.student

    @staticmethod
    def _digest(named_tensors) -> str:
        digest = hashlib.sha256()
        for name, tensor in sorted(named_tensors):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().numpy().tobytes())
        return digest.hexdigest()

    def after_run(self, runner) -> None:
        with open(osp.join(self.out_dir, f'rank{get_rank()}.json'), 'w') as f:
            json.dump(
                dict(
                    weights=self.weights,
                    student=self._digest(self.student.named_parameters()),
                    buffers=self._digest(self.student.named_buffers())), f)
