# Copyright (c) mmakd contributors. All rights reserved.
from .avatar_distiller import AvatarDistiller

__all__ = ['AvatarDistiller']
