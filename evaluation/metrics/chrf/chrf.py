"""chrF and chrF++: character n-gram F-score for generated text (a local `evaluate` module).

Wraps `sacrebleu.CHRF`. Load it by path, offline:

    import evaluate
    chrf = evaluate.load("evaluation/metrics/chrf")
    chrf.compute(predictions=["the cats sat"], references=[["the cat sat"]])             # chrF
    chrf.compute(predictions=["the cats sat"], references=[["the cat sat"]], word_order=2)  # chrF++
"""

import datasets
import evaluate
from sacrebleu.metrics import CHRF

_DESCRIPTION = """\
chrF compares character n-grams (n = 1..6 by default) of the output and the references and reports an
F-score that weights recall beta = 2 times as much as precision, on a 0-100 scale, with statistics summed over
the corpus. Because it works on characters, it needs no tokeniser and gives partial credit for inflections and
small spelling differences ("cats" vs "cat"), where BLEU gives none. chrF++ (word_order=2) adds word unigrams
and bigrams. Like BLEU, it still measures surface overlap, not meaning.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the generated texts.
    references (`list` of `list` of `str`, or `list` of `str`): one or more references per prediction.
    char_order (`int`, default 6): the largest character n-gram.
    word_order (`int`, default 0): the largest word n-gram (2 gives chrF++).
    beta (`int`, default 2): how many times more recall counts than precision.
    lowercase (`bool`, default False): case-insensitive.
    whitespace (`bool`, default False): keep spaces inside character n-grams.
    eps_smoothing (`bool`, default False): the smoothing of the reference chrF++.py instead of sacrebleu's default.
Returns:
    score (`float`, 0-100), char_order, word_order, beta, signature (`str`).
Examples:
    >>> chrf = evaluate.load("evaluation/metrics/chrf")
    >>> chrf.compute(predictions=["the cat sat"], references=[["the cat sat"]])["score"]
    100.0
"""

_CITATION = """\
@inproceedings{popovic-2015-chrf,
  title = "chr{F}: character n-gram {F}-score for automatic {MT} evaluation",
  author = "Popovi{\\'c}, Maja",
  booktitle = "Proceedings of the Tenth Workshop on Statistical Machine Translation",
  year = "2015",
  address = "Lisbon, Portugal",
  url = "https://aclanthology.org/W15-3049",
  pages = "392--395",
}
@inproceedings{popovic-2017-chrf,
  title = "chr{F}++: words helping character n-grams",
  author = "Popovi{\\'c}, Maja",
  booktitle = "Proceedings of the Second Conference on Machine Translation",
  year = "2017",
  address = "Copenhagen, Denmark",
  url = "https://aclanthology.org/W17-4770",
  pages = "612--618",
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Chrf(evaluate.Metric):
    def _info(self):
        text = datasets.Value("string", id="sequence")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[  # several references per prediction, or one
                datasets.Features({"predictions": text, "references": datasets.Sequence(text, id="references")}),
                datasets.Features({"predictions": text, "references": text}),
            ],
            homepage="https://github.com/mjpost/sacrebleu",
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://github.com/m-popovic/chrF"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of texts, after checking predictions and references pair up one to one."""
        if predictions is not None and references is not None:
            if len(predictions) != len(references):
                raise ValueError(f"chrf: {len(predictions)} predictions but {len(references)} references")
            if len(predictions) == 0:
                raise ValueError("chrf: no predictions to score (got empty lists)")
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, char_order=CHRF.CHAR_ORDER, word_order=CHRF.WORD_ORDER,
                 beta=CHRF.BETA, lowercase=False, whitespace=False, eps_smoothing=False):
        chrf = CHRF(char_order=char_order, word_order=word_order, beta=beta, lowercase=lowercase,
                    whitespace=whitespace, eps_smoothing=eps_smoothing)
        score = chrf.corpus_score(predictions, reference_streams(references))
        return {"score": score.score, "char_order": score.char_order, "word_order": score.word_order,
                "beta": score.beta, "signature": str(chrf.get_signature())}


def reference_streams(references):
    """Per-prediction references -> SacreBLEU's streams (stream k holds every prediction's k-th reference)."""
    per_prediction = [[r] if isinstance(r, str) else list(r) for r in references]
    for i, refs in enumerate(per_prediction):
        if not refs:
            raise ValueError(f"chrf: prediction {i} has an empty list of references")
    n_streams = max(len(refs) for refs in per_prediction)
    return [[refs[k] if k < len(refs) else None for refs in per_prediction] for k in range(n_streams)]
