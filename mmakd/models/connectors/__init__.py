# Copyright (c) mmakd contributors. All rights reserved.
from .avatar_connector import AvatarConnector

__all__ = ['AvatarConnector']
from .mgkd_analyser import MGKDAnalyser  # noqa: E402

__all__ += ['MGKDAnalyser']
