"""Accuracy: the share of predictions equal to their reference (a local `evaluate` module).

Wraps `sklearn.metrics.accuracy_score`. Load it by path, offline:

    import evaluate
    accuracy = evaluate.load("evaluation/metrics/accuracy")
    accuracy.compute(predictions=[0, 1, 1], references=[0, 1, 0])   # {'accuracy': 0.666...}

Labels may be integers or strings (both predictions and references of the same kind).
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score

_DESCRIPTION = """\
Accuracy is the proportion of correct predictions among all predictions:
accuracy = (TP + TN) / (TP + TN + FP + FN). It is easy to read but hides which classes are wrong, and on an
imbalanced label set a model that always predicts the majority class already scores high.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int` or `str`): predicted labels.
    references (`list` of `int` or `str`): true labels, one per prediction.
    normalize (`bool`, default True): if False, return the number of correct predictions instead of the share.
    sample_weight (`list` of `float`, optional): a weight per example.
Returns:
    accuracy (`float` or `int`): the share (0.0 to 1.0) or, with normalize=False, the count of correct predictions.
Examples:
    >>> accuracy = evaluate.load("evaluation/metrics/accuracy")
    >>> accuracy.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])
    {'accuracy': 0.75}
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
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[  # the first that fits the inputs is used: integer labels, else string labels
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of predictions and references, after checking they pair up one to one."""
        if predictions is not None and references is not None:
            if len(predictions) != len(references):
                raise ValueError(f"accuracy: {len(predictions)} predictions but {len(references)} references")
            if len(predictions) == 0:
                raise ValueError("accuracy: no predictions to score (got empty lists)")
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        score = accuracy_score(references, predictions, normalize=normalize, sample_weight=sample_weight)
        return {"accuracy": float(score) if normalize or sample_weight is not None else int(score)}
