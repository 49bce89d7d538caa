"""F1 with precision and recall, for binary or multi-class labels (a local `evaluate` module).

Wraps `sklearn.metrics.precision_recall_fscore_support`. Load it by path, offline:

    import evaluate
    f1 = evaluate.load("evaluation/metrics/f1")
    f1.compute(predictions=[0, 1, 2, 2], references=[0, 2, 2, 1], average="macro")

Unlike the Hub's `f1`, it returns precision and recall next to F1 (all three from one sklearn call).
"""

import datasets
import evaluate
from sklearn.metrics import precision_recall_fscore_support

_DESCRIPTION = """\
F1 is the harmonic mean of precision and recall: F1 = 2 * P * R / (P + R), where precision P = TP / (TP + FP)
(how many predicted positives are right) and recall R = TP / (TP + FN) (how many true positives are found).
With more than one class, the per-class scores are combined by `average`:
"binary" (the `pos_label` class only), "micro" (pool every decision; equals accuracy for single-label
multi-class), "macro" (unweighted mean over classes: a rare class counts as much as a frequent one),
"weighted" (mean weighted by class frequency), or None (one score per class).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int` or `str`): predicted labels.
    references (`list` of `int` or `str`): true labels, one per prediction.
    average (`str` or None, default "binary"): "binary", "micro", "macro", "weighted", or None for per-class scores.
    labels (`list`, optional): the labels to include (and their order when average=None).
    pos_label (`int` or `str`, default 1): the positive class when average="binary".
    sample_weight (`list` of `float`, optional): a weight per example.
    zero_division (`float` or "warn", default 0.0): the value when a ratio has a zero denominator.
Returns:
    f1, precision, recall (`float`, or `list` of `float` when average=None).
Examples:
    >>> f1 = evaluate.load("evaluation/metrics/f1")
    >>> f1.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'f1': 0.666..., 'precision': 0.5, 'recall': 1.0}
"""

_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and Varoquaux, G. and Gramfort, A. and Michel, V. and Thirion, B. and Grisel, O. and
          Blondel, M. and Prettenhofer, P. and Weiss, R. and Dubourg, V. and Vanderplas, J. and Passos, A. and
          Cournapeau, D. and Brucher, M. and Perrot, M. and Duchesnay, E.},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class F1(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[  # the first that fits the inputs is used: integer labels, else string labels
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.f1_score.html"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of predictions and references, after checking they pair up one to one."""
        if predictions is not None and references is not None:
            if len(predictions) != len(references):
                raise ValueError(f"f1: {len(predictions)} predictions but {len(references)} references")
            if len(predictions) == 0:
                raise ValueError("f1: no predictions to score (got empty lists)")
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, average="binary", labels=None, pos_label=1,
                 sample_weight=None, zero_division=0.0):
        precision, recall, f1, _ = precision_recall_fscore_support(
            references, predictions, average=average, labels=labels, pos_label=pos_label,
            sample_weight=sample_weight, zero_division=zero_division)
        if average is None:  # one value per class, in the order of `labels` (default: sorted labels)
            return {"f1": f1.tolist(), "precision": precision.tolist(), "recall": recall.tolist()}
        return {"f1": float(f1), "precision": float(precision), "recall": float(recall)}
