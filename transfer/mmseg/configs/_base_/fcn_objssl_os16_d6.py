# FCN over an objssl backbone with SlotCon's VOC / Cityscapes settings (docs/methods.md#slotcon-transfer):
# ResNet at output stride 16 (layer4 dilated by 2, mmseg ResNet's contract_dilation=False), FCNHead
# with 256 channels, 2 convs of dilation 6, no input concat, no dropout, align_corners, no auxiliary
# head; SyncBN everywhere with norm_eval False. Input: RGB with torchvision's mean/std on 0-255
# pixels. (SlotCon's _moco dataset configs divide 0-255 pixels by the 0-1 scale mean/std; with
# SyncBN after conv1 that trains too, but it is not what the backbone was pretrained on.)
custom_imports = dict(imports=['objssl.integrations.mmseg'], allow_failed_imports=False)
norm_cfg = dict(type='SyncBN', requires_grad=True)
data_preprocessor = dict(
    type='SegDataPreProcessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_val=0,
    seg_pad_val=255)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=data_preprocessor,
    backbone=dict(
        type='ObjsslTimmBackbone',
        model_name='resnet50',          # any timm name
        out_indices=(1, 2, 3, 4),       # timm feature indices: layer1..layer4
        output_stride=16,
        contract_dilation=False,
        norm_cfg=norm_cfg,
        norm_eval=False,
        frozen_stages=-1,
        # set by train.py --checkpoint: dict(type='Pretrained', checkpoint=CKPT, which='teacher')
        init_cfg=None),
    decode_head=dict(
        type='FCNHead',
        in_channels=2048,
        in_index=3,
        channels=256,
        num_convs=2,
        dilation=6,
        concat_input=False,
        dropout_ratio=0.0,
        num_classes=21,
        norm_cfg=norm_cfg,
        align_corners=True,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0)),
    train_cfg=dict(),
    test_cfg=dict(mode='whole'))
