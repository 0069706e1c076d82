"""Models ``resnet``, ``convnext``, ``vit`` and ``efficientnet``: standard image classifiers in
plain torch, one linear head per dataset head, ``pretrained: PATH`` from a core-train run."""

from core import hookimpl


@hookimpl
def core_models() -> dict[str, str]:
    return {
        "resnet": "plugins.zoo.resnet:ResNet",
        "convnext": "plugins.zoo.convnext:ConvNeXt",
        "vit": "plugins.zoo.vit:ViT",
        "efficientnet": "plugins.zoo.efficientnet:EfficientNet",
    }
