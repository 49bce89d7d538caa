"""Confusion matrix: counts of (true label, predicted label) pairs (a local `evaluate` module).

Wraps `sklearn.metrics.confusion_matrix`. Load it by path, offline:

    import evaluate
    cm = evaluate.load("evaluation/metrics/confusion_matrix")
    cm.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])   # {'confusion_matrix': array([[2, 1], [0, 1]])}
"""

import datasets
import evaluate
from sklearn.metrics import confusion_matrix

_DESCRIPTION = """\
The confusion matrix C has one row per true label and one column per predicted label: C[i, j] is the number
of examples of class i that were predicted as class j. The diagonal holds the correct predictions; every
off-diagonal cell is one kind of mistake. Accuracy, precision, recall and F1 can all be read off it.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int` or `str`): predicted labels.
    references (`list` of `int` or `str`): true labels, one per prediction.
    labels (`list`, optional): the labels, in the order of the rows and columns (default: sorted labels seen).
    sample_weight (`list` of `float`, optional): a weight per example.
    normalize ("true", "pred", "all" or None): divide by the row sums, column sums or total (None: counts).
Returns:
    confusion_matrix (`numpy.ndarray`): shape (n_labels, n_labels); rows are true labels, columns predictions.
Examples:
    >>> cm = evaluate.load("evaluation/metrics/confusion_matrix")
    >>> cm.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])["confusion_matrix"].tolist()
    [[2, 1], [0, 1]]
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
class ConfusionMatrix(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[  # the first that fits the inputs is used: integer labels, else string labels
                datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}),
                datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
            ],
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.confusion_matrix.html"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of predictions and references, after checking they pair up one to one."""
        if predictions is not None and references is not None:
            if len(predictions) != len(references):
                raise ValueError(f"confusion_matrix: {len(predictions)} predictions but {len(references)} references")
            if len(predictions) == 0:
                raise ValueError("confusion_matrix: no predictions to score (got empty lists)")
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, labels=None, sample_weight=None, normalize=None):
        matrix = confusion_matrix(references, predictions, labels=labels, sample_weight=sample_weight,
                                  normalize=normalize)
        return {"confusion_matrix": matrix}
