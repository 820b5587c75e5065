# Copyright (c) mmakd contributors. All rights reserved.
from .avatar_connector import AvatarConnector

__all__ = ['AvatarConnector']
