"""The torchvision classification models, as data: ``tk list models`` and ``tk show model``
read this table and never import torchvision (about 2 s more than torch alone).

One ``Entry`` per model of ``torchvision.models.list_models(module=torchvision.models)``
on torchvision 0.29.1. ``tests/plugins/test_vision_models.py`` compares every row with
the installed torchvision (names, weights enums, sizes, parameter counts), so the table
cannot drift; when torchvision changes, that test prints the rows to paste here
(``python tests/plugins/test_vision_models.py`` prints them all).
"""

from __future__ import annotations

from typing import NamedTuple

TORCHVISION_VERSION = "0.29.1"


class Family(NamedTuple):
    """A torchvision model module (``torchvision.models.<module>``) and where its ends are."""

    title: str
    head: tuple[str, ...]  # what _heads.find_head finds: the output layer, then any auxiliary heads
    stem: str  # what _heads.find_input_conv finds: the first convolution


class Entry(NamedTuple):
    name: str
    family: str  # a key of FAMILIES
    weights: dict[str, int]  # weights enum member -> the input size (crop) its transforms give
    default: str  # the member that DEFAULT stands for
    min_size: int  # the smallest input height/width the DEFAULT weights' meta admits
    num_params: int
    acc1: float  # ImageNet-1K top-1 accuracy of the DEFAULT weights, in percent
    dropout: bool  # the architecture takes a ``dropout`` argument

    @property
    def input_size(self) -> int:
        """The input size the DEFAULT weights were evaluated at."""
        return self.weights[self.default]


FAMILIES: dict[str, Family] = {
    "alexnet": Family("AlexNet", ("classifier.6",), "features.0"),
    "convnext": Family("ConvNeXt", ("classifier.2",), "features.0.0"),
    "densenet": Family("DenseNet", ("classifier",), "features.conv0"),
    "efficientnet": Family("EfficientNet", ("classifier.1",), "features.0.0"),
    "googlenet": Family("GoogLeNet", ("fc", "aux1.fc2", "aux2.fc2"), "conv1.conv"),
    "inception": Family("Inception v3", ("fc", "AuxLogits.fc"), "Conv2d_1a_3x3.conv"),
    "maxvit": Family("MaxViT", ("classifier.5",), "stem.0.0"),
    "mnasnet": Family("MNASNet", ("classifier.1",), "layers.0"),
    "mobilenetv2": Family("MobileNetV2", ("classifier.1",), "features.0.0"),
    "mobilenetv3": Family("MobileNetV3", ("classifier.3",), "features.0.0"),
    "regnet": Family("RegNet", ("fc",), "stem.0"),
    "resnet": Family("ResNet", ("fc",), "conv1"),
    "shufflenetv2": Family("ShuffleNetV2", ("fc",), "conv1.0"),
    "squeezenet": Family("SqueezeNet", ("classifier.1",), "features.0"),
    "swin_transformer": Family("Swin Transformer", ("head",), "features.0.0"),
    "vgg": Family("VGG", ("classifier.6",), "features.0"),
    "vision_transformer": Family("Vision Transformer", ("heads.head",), "conv_proj"),
}

MODELS: dict[str, Entry] = {entry.name: entry for entry in (
    Entry("alexnet", "alexnet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 63, 61100840, 56.522, True),
    Entry("convnext_base", "convnext", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 32, 88591464, 84.062, False),
    Entry("convnext_large", "convnext", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 32, 197767336, 84.414, False),
    Entry("convnext_small", "convnext", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 32, 50223688, 83.616, False),
    Entry("convnext_tiny", "convnext", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 32, 28589128, 82.52, False),
    Entry("densenet121", "densenet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 29, 7978856, 74.434, False),
    Entry("densenet161", "densenet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 29, 28681000, 77.138, False),
    Entry("densenet169", "densenet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 29, 14149480, 75.6, False),
    Entry("densenet201", "densenet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 29, 20013928, 76.896, False),
    Entry("efficientnet_b0", "efficientnet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 5288548, 77.692, True),
    Entry("efficientnet_b1", "efficientnet", {"IMAGENET1K_V1": 240, "IMAGENET1K_V2": 240},
          "IMAGENET1K_V2", 1, 7794184, 79.838, True),
    Entry("efficientnet_b2", "efficientnet", {"IMAGENET1K_V1": 288}, "IMAGENET1K_V1", 1, 9109994, 80.608, True),
    Entry("efficientnet_b3", "efficientnet", {"IMAGENET1K_V1": 300}, "IMAGENET1K_V1", 1, 12233232, 82.008, True),
    Entry("efficientnet_b4", "efficientnet", {"IMAGENET1K_V1": 380}, "IMAGENET1K_V1", 1, 19341616, 83.384, True),
    Entry("efficientnet_b5", "efficientnet", {"IMAGENET1K_V1": 456}, "IMAGENET1K_V1", 1, 30389784, 83.444, True),
    Entry("efficientnet_b6", "efficientnet", {"IMAGENET1K_V1": 528}, "IMAGENET1K_V1", 1, 43040704, 84.008, True),
    Entry("efficientnet_b7", "efficientnet", {"IMAGENET1K_V1": 600}, "IMAGENET1K_V1", 1, 66347960, 84.122, True),
    Entry("efficientnet_v2_l", "efficientnet", {"IMAGENET1K_V1": 480}, "IMAGENET1K_V1", 33, 118515272, 85.808, True),
    Entry("efficientnet_v2_m", "efficientnet", {"IMAGENET1K_V1": 480}, "IMAGENET1K_V1", 33, 54139356, 85.112, True),
    Entry("efficientnet_v2_s", "efficientnet", {"IMAGENET1K_V1": 384}, "IMAGENET1K_V1", 33, 21458488, 84.228, True),
    Entry("googlenet", "googlenet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 15, 6624904, 69.778, True),
    Entry("inception_v3", "inception", {"IMAGENET1K_V1": 299}, "IMAGENET1K_V1", 75, 27161264, 77.294, True),
    Entry("maxvit_t", "maxvit", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 224, 30919624, 83.7, False),
    Entry("mnasnet0_5", "mnasnet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 2218512, 67.734, True),
    Entry("mnasnet0_75", "mnasnet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 3170208, 71.18, True),
    Entry("mnasnet1_0", "mnasnet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 4383312, 73.456, True),
    Entry("mnasnet1_3", "mnasnet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 6282256, 76.506, True),
    Entry("mobilenet_v2", "mobilenetv2", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 3504872, 72.154, True),
    Entry("mobilenet_v3_large", "mobilenetv3", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 5483032, 75.274, True),
    Entry("mobilenet_v3_small", "mobilenetv3", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 2542856, 67.668, True),
    Entry("regnet_x_16gf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 54278536, 82.716, False),
    Entry("regnet_x_1_6gf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 9190136, 79.668, False),
    Entry("regnet_x_32gf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 107811560, 83.014, False),
    Entry("regnet_x_3_2gf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 15296552, 81.196, False),
    Entry("regnet_x_400mf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 5495976, 74.864, False),
    Entry("regnet_x_800mf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 7259656, 77.522, False),
    Entry("regnet_x_8gf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 39572648, 81.682, False),
    Entry("regnet_y_128gf", "regnet", {"IMAGENET1K_SWAG_E2E_V1": 384, "IMAGENET1K_SWAG_LINEAR_V1": 224},
          "IMAGENET1K_SWAG_E2E_V1", 1, 644812894, 88.228, False),
    Entry("regnet_y_16gf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224, "IMAGENET1K_SWAG_E2E_V1": 384, "IMAGENET1K_SWAG_LINEAR_V1": 224},
          "IMAGENET1K_V2", 1, 83590140, 82.886, False),
    Entry("regnet_y_1_6gf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 11202430, 80.876, False),
    Entry("regnet_y_32gf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224, "IMAGENET1K_SWAG_E2E_V1": 384, "IMAGENET1K_SWAG_LINEAR_V1": 224},
          "IMAGENET1K_V2", 1, 145046770, 83.368, False),
    Entry("regnet_y_3_2gf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 19436338, 81.982, False),
    Entry("regnet_y_400mf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 4344144, 75.804, False),
    Entry("regnet_y_800mf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 6432512, 78.828, False),
    Entry("regnet_y_8gf", "regnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 39381472, 82.828, False),
    Entry("resnet101", "resnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 44549160, 81.886, False),
    Entry("resnet152", "resnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 60192808, 82.284, False),
    Entry("resnet18", "resnet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 11689512, 69.758, False),
    Entry("resnet34", "resnet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 21797672, 73.314, False),
    Entry("resnet50", "resnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 25557032, 80.858, False),
    Entry("resnext101_32x8d", "resnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 88791336, 82.834, False),
    Entry("resnext101_64x4d", "resnet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 83455272, 83.246, False),
    Entry("resnext50_32x4d", "resnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 25028904, 81.198, False),
    Entry("shufflenet_v2_x0_5", "shufflenetv2", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 1366792, 60.552, False),
    Entry("shufflenet_v2_x1_0", "shufflenetv2", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 2278604, 69.362, False),
    Entry("shufflenet_v2_x1_5", "shufflenetv2", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 3503624, 72.996, False),
    Entry("shufflenet_v2_x2_0", "shufflenetv2", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 1, 7393996, 76.23, False),
    Entry("squeezenet1_0", "squeezenet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 21, 1248424, 58.092, True),
    Entry("squeezenet1_1", "squeezenet", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 17, 1235496, 58.178, True),
    Entry("swin_b", "swin_transformer", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 224, 87768224, 83.582, True),
    Entry("swin_s", "swin_transformer", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 224, 49606258, 83.196, True),
    Entry("swin_t", "swin_transformer", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 224, 28288354, 81.474, True),
    Entry("swin_v2_b", "swin_transformer", {"IMAGENET1K_V1": 256}, "IMAGENET1K_V1", 256, 87930848, 84.112, True),
    Entry("swin_v2_s", "swin_transformer", {"IMAGENET1K_V1": 256}, "IMAGENET1K_V1", 256, 49737442, 83.712, True),
    Entry("swin_v2_t", "swin_transformer", {"IMAGENET1K_V1": 256}, "IMAGENET1K_V1", 256, 28351570, 82.072, True),
    Entry("vgg11", "vgg", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 32, 132863336, 69.02, True),
    Entry("vgg11_bn", "vgg", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 32, 132868840, 70.37, True),
    Entry("vgg13", "vgg", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 32, 133047848, 69.928, True),
    Entry("vgg13_bn", "vgg", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 32, 133053736, 71.586, True),
    Entry("vgg16", "vgg", {"IMAGENET1K_V1": 224, "IMAGENET1K_FEATURES": 224},
          "IMAGENET1K_V1", 32, 138357544, 71.592, True),
    Entry("vgg16_bn", "vgg", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 32, 138365992, 73.36, True),
    Entry("vgg19", "vgg", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 32, 143667240, 72.376, True),
    Entry("vgg19_bn", "vgg", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 32, 143678248, 74.218, True),
    Entry("vit_b_16", "vision_transformer", {"IMAGENET1K_V1": 224, "IMAGENET1K_SWAG_E2E_V1": 384, "IMAGENET1K_SWAG_LINEAR_V1": 224},
          "IMAGENET1K_V1", 224, 86567656, 81.072, True),
    Entry("vit_b_32", "vision_transformer", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 224, 88224232, 75.912, True),
    Entry("vit_h_14", "vision_transformer", {"IMAGENET1K_SWAG_E2E_V1": 518, "IMAGENET1K_SWAG_LINEAR_V1": 224},
          "IMAGENET1K_SWAG_E2E_V1", 518, 633470440, 88.552, True),
    Entry("vit_l_16", "vision_transformer", {"IMAGENET1K_V1": 224, "IMAGENET1K_SWAG_E2E_V1": 512, "IMAGENET1K_SWAG_LINEAR_V1": 224},
          "IMAGENET1K_V1", 224, 304326632, 79.662, True),
    Entry("vit_l_32", "vision_transformer", {"IMAGENET1K_V1": 224}, "IMAGENET1K_V1", 224, 306535400, 76.972, True),
    Entry("wide_resnet101_2", "resnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 126886696, 82.51, False),
    Entry("wide_resnet50_2", "resnet", {"IMAGENET1K_V1": 224, "IMAGENET1K_V2": 224},
          "IMAGENET1K_V2", 1, 68883240, 81.602, False),
)}
