"""Evaluation protocols on frozen backbone features: weighted kNN, a linear probe, ORL's VOC07 SVM
and its low-shot variant, with cached feature extraction and side-by-side reports.

Layer: above ``methods`` (it builds backbones and reads checkpoints), below ``engine`` (whose
training monitor runs the kNN eval). See docs/evaluation.md for the protocols and their sources.
"""

from objssl.evaluation.checkpoints import EvalBackbone, load_eval_backbone
from objssl.evaluation.datasets import LabelledImages, read_coco_labels, read_image_folder, read_voc
from objssl.evaluation.features import Features, extract_features
from objssl.evaluation.knn import knn_accuracy, knn_class_scores

__all__ = [
    "EvalBackbone", "load_eval_backbone", "LabelledImages", "read_image_folder", "read_voc", "read_coco_labels",
    "Features", "extract_features", "knn_accuracy", "knn_class_scores",
]
