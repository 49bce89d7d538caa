"""ROUGE-1/2/L/Lsum n-gram and subsequence overlap for summaries (a local `evaluate` module).

Wraps Google's `rouge-score` package. Load it by path, offline:

    import evaluate
    rouge = evaluate.load("evaluation/metrics/rouge")
    rouge.compute(predictions=["the cat sat"], references=["the cat sat on the mat"], use_stemmer=True)

Aggregation is the plain mean over examples (the Hub's `rouge` reports the median of a bootstrap, which is
close to the mean but random). Nothing is downloaded: rougeLsum splits sentences on newlines only.
"""

import datasets
import evaluate
import numpy as np
from rouge_score import rouge_scorer

_DESCRIPTION = """\
ROUGE (Recall-Oriented Understudy for Gisting Evaluation) compares a generated text with one or more human
references by word overlap: rouge1 and rouge2 count shared unigrams and bigrams, rougeL uses the longest common
subsequence (in-order words, not necessarily adjacent), and rougeLsum applies LCS per sentence (sentences must
be separated by newlines). Each gives precision, recall and their F-measure; this module reports one of them.

What it rewards: copying the reference's words. What it misses: meaning (paraphrases and synonyms score 0),
factual errors (a negated or wrong fact can keep most of the overlap) and fluency. The default tokenizer
lower-cases and keeps only [a-z0-9] tokens, so text in other scripts scores 0 unless you pass a tokenizer;
`use_stemmer=True` (Porter) lets "running" match "runs".
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `str`): the generated texts.
    references (`list` of `str`, or `list` of `list` of `str`): one reference, or several, per prediction; with
        several, the best-scoring reference counts (per ROUGE type, by F-measure).
    rouge_types (`list` of `str`, default ["rouge1", "rouge2", "rougeL", "rougeLsum"]): any "rougeN" (N >= 1),
        "rougeL" or "rougeLsum".
    use_stemmer (`bool`, default False): Porter-stem words longer than 3 characters before matching.
    use_aggregator (`bool`, default True): the mean over examples; False gives one score per example.
    score (`str`, default "fmeasure"): "fmeasure", "precision" or "recall".
    tokenizer (callable, optional): text -> list of tokens, replacing the default [a-z0-9] tokenizer.
Returns:
    a dict from each ROUGE type to a `float` (or a `list` of `float` without aggregation), 0.0 to 1.0.
Examples:
    >>> rouge = evaluate.load("evaluation/metrics/rouge")
    >>> rouge.compute(predictions=["hello there"], references=["hello there general kenobi"], rouge_types=["rouge1"])
    {'rouge1': 0.666...}
"""

_CITATION = """\
@inproceedings{lin-2004-rouge,
  title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
  author = "Lin, Chin-Yew",
  booktitle = "Text Summarization Branches Out",
  year = "2004",
  address = "Barcelona, Spain",
  publisher = "Association for Computational Linguistics",
  url = "https://www.aclweb.org/anthology/W04-1013",
  pages = "74--81",
}
"""

DEFAULT_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


class _CallableTokenizer:
    """rouge-score wants an object with .tokenize(text); accept a plain function too."""

    def __init__(self, fn):
        self.fn = fn

    def tokenize(self, text):
        return self.fn(text)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Rouge(evaluate.Metric):
    def _info(self):
        text = datasets.Value("string", id="sequence")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=[  # several references per prediction, or one
                datasets.Features({"predictions": text, "references": datasets.Sequence(text)}),
                datasets.Features({"predictions": text, "references": text}),
            ],
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=["https://en.wikipedia.org/wiki/ROUGE_(metric)"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of texts, after checking predictions and references pair up one to one."""
        if predictions is not None and references is not None:
            if len(predictions) != len(references):
                raise ValueError(f"rouge: {len(predictions)} predictions but {len(references)} references")
            if len(predictions) == 0:
                raise ValueError("rouge: no predictions to score (got empty lists)")
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, rouge_types=None, use_stemmer=False, use_aggregator=True,
                 score="fmeasure", tokenizer=None):
        rouge_types = list(rouge_types or DEFAULT_TYPES)
        if score not in ("fmeasure", "precision", "recall"):
            raise ValueError(f"rouge: score must be 'fmeasure', 'precision' or 'recall', not {score!r}")
        if tokenizer is not None and not hasattr(tokenizer, "tokenize"):
            tokenizer = _CallableTokenizer(tokenizer)
        scorer = rouge_scorer.RougeScorer(rouge_types, use_stemmer=use_stemmer, tokenizer=tokenizer)
        per_example = []
        for i, (prediction, reference) in enumerate(zip(predictions, references, strict=True)):
            if isinstance(reference, str):
                per_example.append(scorer.score(reference, prediction))
            elif len(reference) == 0:
                raise ValueError(f"rouge: example {i} has an empty list of references")
            else:
                per_example.append(scorer.score_multi(reference, prediction))
        result = {t: [float(getattr(s[t], score)) for s in per_example] for t in rouge_types}
        if use_aggregator:
            result = {t: float(np.mean(values)) for t, values in result.items()}
        return result
