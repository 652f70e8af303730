# ADE20K FCN, SlotCon's protocol = mmseg's standard FCN R50-D8: output stride 8 (layer3/layer4
# dilated 2/4, first block contracted as in ResNetV1c D8 configs), FCNHead 512 channels, 2 convs,
# input concat, dropout 0.1, auxiliary FCN head on layer3 (weight 0.4), 150 classes; 512x512 crops
# from (2048, 512) x [0.5, 2], cat_max_ratio 0.75, flip, photometric distortion; SGD lr 0.01,
# momentum 0.9, wd 5e-4, poly 0.9 down to 1e-4, 80k iterations, batch 16 (4 x 4 GPUs).
#   python transfer/mmseg/train.py THIS --checkpoint CKPT --data-root data/ade/ADEChallengeData2016 --launcher pytorch
# data (pipelines, batch 4, loaders) and schedule are mmseg's own ADE20K / 80k bases, which are exactly
# this protocol; only the model is objssl's.
_base_ = ['mmseg::_base_/datasets/ade20k.py', 'mmseg::_base_/schedules/schedule_80k.py',
          'mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['objssl.integrations.mmseg'], allow_failed_imports=False)
crop_size = (512, 512)
norm_cfg = dict(type='SyncBN', requires_grad=True)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=crop_size),
    backbone=dict(
        type='ObjsslTimmBackbone',
        model_name='resnet50',
        out_indices=(1, 2, 3, 4),
        output_stride=8,
        contract_dilation=True,
        norm_cfg=norm_cfg,
        norm_eval=False,
        frozen_stages=-1,
        init_cfg=None),
    decode_head=dict(
        type='FCNHead',
        in_channels=2048,
        in_index=3,
        channels=512,
        num_convs=2,
        concat_input=True,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    auxiliary_head=dict(
        type='FCNHead',
        in_channels=1024,
        in_index=2,
        channels=256,
        num_convs=1,
        concat_input=False,
        dropout_ratio=0.1,
        num_classes=150,
        norm_cfg=norm_cfg,
        align_corners=False,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
