"""Corpus BLEU with SacreBLEU's standard tokenisation and a reproducibility signature (a local `evaluate` module).

Wraps `sacrebleu.BLEU`. Load it by path, offline:

    import evaluate
    bleu = evaluate.load("evaluation/metrics/sacrebleu")
    bleu.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])  # score 100.0

References are given per prediction (a list of one or more strings each); SacreBLEU's reference streams are
built from them, and a prediction with fewer references than the others is padded with None, as SacreBLEU
allows.
"""

import datasets
import evaluate
from sacrebleu.metrics import BLEU

_DESCRIPTION = """\
BLEU scores a set of translations (or any generated texts) against references by modified n-gram precision
(n = 1..4, each n-gram counted at most as often as in a reference), combined by a geometric mean and multiplied
by a brevity penalty for outputs shorter than the references. It is a corpus-level metric (statistics are summed
over all sentences before the ratio is taken), on a 0-100 scale.

Gotcha: the score depends on tokenisation. SacreBLEU tokenises the raw text itself ("13a", the WMT standard, by
default) and prints a signature (e.g. nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0) so that scores
are comparable; BLEU computed on your own tokenisation is not comparable with anyone else's. BLEU rewards exact
word overlap and misses synonyms, paraphrases and morphology.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the generated texts (detokenised, as a human would read them).
    references (`list` of `list` of `str`, or `list` of `str`): one or more references per prediction.
    tokenize (`str`, default "13a"): "13a", "intl", "char", "none", "zh" (and "ja-mecab"/"ko-mecab" if installed).
    lowercase (`bool`, default False): case-insensitive BLEU.
    smooth_method (`str`, default "exp"): "none", "floor", "add-k" or "exp".
    smooth_value (`float`, optional): the value for "floor" (0.1) and "add-k" (1).
    force (`bool`, default False): do not warn about input that looks already tokenised.
    use_effective_order (`bool`, default False): drop n-gram orders with no matches (for sentence-level BLEU).
Returns:
    score (`float`, 0-100), counts, totals (matching / total n-grams for n = 1..4), precisions (`list`, 0-100),
    bp (brevity penalty), sys_len, ref_len (token counts), signature (`str`).
Examples:
    >>> bleu = evaluate.load("evaluation/metrics/sacrebleu")
    >>> bleu.compute(predictions=["hello there general kenobi"], references=[["hello there general kenobi"]])["score"]
    100.00000000000004
"""

_CITATION = """\
@inproceedings{post-2018-call,
  title = "A Call for Clarity in Reporting {BLEU} Scores",
  author = "Post, Matt",
  booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
  year = "2018",
  address = "Belgium, Brussels",
  publisher = "Association for Computational Linguistics",
  url = "https://www.aclweb.org/anthology/W18-6319",
  pages = "186--191",
}
@inproceedings{papineni-etal-2002-bleu,
  title = "{B}leu: a Method for Automatic Evaluation of Machine Translation",
  author = "Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing",
  booktitle = "Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics",
  year = "2002",
  url = "https://www.aclweb.org/anthology/P02-1040",
  pages = "311--318",
}
"""

DOWNLOADING_TOKENIZERS = ("spm", "flores101", "flores200", "spBLEU-1K")  # fetch a SentencePiece model


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Sacrebleu(evaluate.Metric):
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
            reference_urls=["https://github.com/mjpost/sacrebleu#bleu"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of texts, after checking predictions and references pair up one to one."""
        if predictions is not None and references is not None:
            if len(predictions) != len(references):
                raise ValueError(f"sacrebleu: {len(predictions)} predictions but {len(references)} references")
            if len(predictions) == 0:
                raise ValueError("sacrebleu: no predictions to score (got empty lists)")
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, tokenize="13a", lowercase=False, smooth_method="exp",
                 smooth_value=None, force=False, use_effective_order=False):
        if tokenize in DOWNLOADING_TOKENIZERS:
            raise ValueError(f"sacrebleu: tokenize={tokenize!r} downloads a SentencePiece model; this module is "
                             "offline-only, use '13a', 'intl', 'char', 'none' or 'zh'")
        bleu = BLEU(lowercase=lowercase, force=force, tokenize=tokenize, smooth_method=smooth_method,
                    smooth_value=smooth_value, effective_order=use_effective_order)
        score = bleu.corpus_score(predictions, reference_streams(references, "sacrebleu"))
        return {"score": score.score, "counts": score.counts, "totals": score.totals,
                "precisions": score.precisions, "bp": score.bp, "sys_len": score.sys_len,
                "ref_len": score.ref_len, "signature": str(bleu.get_signature())}


def reference_streams(references, name):
    """Per-prediction references -> SacreBLEU's streams (stream k holds every prediction's k-th reference)."""
    per_prediction = [[r] if isinstance(r, str) else list(r) for r in references]
    for i, refs in enumerate(per_prediction):
        if not refs:
            raise ValueError(f"{name}: prediction {i} has an empty list of references")
    n_streams = max(len(refs) for refs in per_prediction)
    return [[refs[k] if k < len(refs) else None for refs in per_prediction] for k in range(n_streams)]
