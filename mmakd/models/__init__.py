# Copyright (c) mmakd contributors. All rights reserved.
import mmrazor.models  # noqa: F401  (MMRazor's modules first: we extend them)

from .algorithms import *  # noqa: F401,F403
from .avatars import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .connectors import *  # noqa: F401,F403
from .distillers import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .utils import *  # noqa: F401,F403
