# Copyright (c) mmakd contributors. All rights reserved.
import pytest
from mmdet.models import DetDataPreprocessor
from mmengine.model import BaseDataPreprocessor
from mmpretrain.models import ClsDataPreprocessor
from mmseg.models import SegDataPreProcessor

from mmakd.models.utils import (check_preprocessors_match,
                                preprocessing_signature)

MEAN, STD = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
CAFFE_MEAN, CAFFE_STD = [103.53, 116.28, 123.675], [1.0, 1.0, 1.0]


@pytest.mark.parametrize('cls,rgb_key', [(DetDataPreprocessor, 'bgr_to_rgb'),
                                         (SegDataPreProcessor, 'bgr_to_rgb'),
                                         (ClsDataPreprocessor, 'to_rgb')])
def test_signature_of_each_library(cls, rgb_key):
    sig = preprocessing_signature(cls(mean=MEAN, std=STD, **{rgb_key: True}))
    assert sig['mean'] == pytest.approx(tuple(MEAN))
    assert sig['std'] == pytest.approx(tuple(STD))
    assert sig['flip_channels'] is True
    sig = preprocessing_signature(cls())
    assert sig == dict(mean=None, std=None, flip_channels=False)


def test_unspecified_preprocessor_is_not_compared():
    assert preprocessing_signature(BaseDataPreprocessor()) is None
    assert preprocessing_signature(None) is None
    check_preprocessors_match(
        ('model.architecture.data_preprocessor',
         DetDataPreprocessor(mean=MEAN, std=STD, bgr_to_rgb=True)),
        [('model.teacher.data_preprocessor', BaseDataPreprocessor())])


def test_matching_preprocessors_pass():
    student = DetDataPreprocessor(mean=MEAN, std=STD, bgr_to_rgb=True)
    teacher = DetDataPreprocessor(
        mean=MEAN, std=STD, bgr_to_rgb=True, pad_size_divisor=32)
    check_preprocessors_match(('a', student), [('b', teacher)])


def test_mean_std_and_channel_order_mismatch_named():
    student = DetDataPreprocessor(mean=MEAN, std=STD, bgr_to_rgb=True)
    caffe = DetDataPreprocessor(mean=CAFFE_MEAN, std=CAFFE_STD)
    with pytest.raises(ValueError) as info:
        check_preprocessors_match(
            ('model.architecture.data_preprocessor', student),
            [('model.teacher.data_preprocessor', caffe)])
    message = str(info.value)
    assert 'model.teacher.data_preprocessor' in message
    assert 'model.architecture.data_preprocessor' in message
    for field in ('mean:', 'std:', 'channel order'):
        assert field in message
    assert 'model.check_preprocessors=False' in message


def test_normalising_vs_not_normalising_is_a_mismatch():
    student = SegDataPreProcessor(mean=MEAN, std=STD)
    with pytest.raises(ValueError, match=r'mean: t=None'):
        check_preprocessors_match(('s', student),
                                  [('t', SegDataPreProcessor())])
