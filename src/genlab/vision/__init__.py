"""Visual representation learning: ViT and ResNet classifiers, MAE pretraining, probes."""

from genlab.vision.classifier import Classifier, ClassifierConfig
from genlab.vision.mae import MAE, MAEConfig
from genlab.vision.resnet import ResNet, ResNetConfig
from genlab.vision.vit import ViT, ViTConfig

__all__ = ["MAE", "Classifier", "ClassifierConfig", "MAEConfig", "ResNet", "ResNetConfig", "ViT", "ViTConfig"]
