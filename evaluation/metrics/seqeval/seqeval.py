"""Entity-level precision, recall and F1 for sequence labelling, e.g. NER (a local `evaluate` module).

Wraps `seqeval` (the conlleval-compatible scorer). Load it by path, offline:

    import evaluate
    seqeval = evaluate.load("evaluation/metrics/seqeval")
    seqeval.compute(predictions=[["B-PER", "I-PER", "O"]], references=[["B-PER", "I-PER", "O"]])

Same output as the Hub's `seqeval`: one dict per entity type, plus overall (micro) scores and token accuracy.
"""

import importlib
import warnings

import datasets
import evaluate
from seqeval.metrics import accuracy_score, classification_report

_DESCRIPTION = """\
seqeval scores chunks, not tokens: the tags (e.g. B-person I-person) are first decoded into entities
(type, start, end), and a predicted entity counts as correct only if its type and both boundaries match a
gold entity exactly. Precision, recall and F1 are computed over entities per type; the overall scores are
micro averages (every entity counts once). `overall_accuracy` is plain token accuracy, which is dominated by
the O tag and is therefore much higher than entity F1 on typical NER data.

`mode=None` (default) decodes like conlleval.pl, leniently: an I- tag without a preceding B- starts an entity.
`mode="strict"` with `scheme="IOB2"` (or IOB1, IOE1, IOE2, IOBES, BILOU) only accepts well-formed chunks of that
scheme, so the two modes can disagree on invalid tag sequences.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): predicted tags, one list per sentence.
    references (`list` of `list` of `str`): gold tags, one list per sentence, of the same lengths.
    suffix (`bool`, default False): True if the tag type comes first (PER-B instead of B-PER).
    scheme (`str`, optional): "IOB1", "IOB2", "IOE1", "IOE2", "IOBES" or "BILOU"; used with mode="strict".
    mode (`str`, optional): None (conlleval-compatible) or "strict".
    sample_weight (`list` of `float`, optional): a weight per sentence.
    zero_division (0, 1 or "warn", default 0): the value when a ratio has a zero denominator.
Returns:
    one dict per entity type with precision, recall, f1 and number (gold entities of that type), and
    overall_precision, overall_recall, overall_f1 (micro over entities), overall_accuracy (over tokens).
Examples:
    >>> seqeval = evaluate.load("evaluation/metrics/seqeval")
    >>> seqeval.compute(predictions=[["B-PER", "I-PER", "O", "B-LOC"]], references=[["B-PER", "I-PER", "O", "O"]])
    {'LOC': {'precision': 0.0, 'recall': 0.0, 'f1': 0.0, 'number': 0}, 'PER': {..., 'number': 1},
     'overall_precision': 0.5, 'overall_recall': 1.0, 'overall_f1': 0.666..., 'overall_accuracy': 0.75}
"""

_CITATION = """\
@misc{seqeval,
  title={{seqeval}: A Python framework for sequence labeling evaluation},
  url={https://github.com/chakki-works/seqeval},
  note={Software available from https://github.com/chakki-works/seqeval},
  author={Hiroki Nakayama},
  year={2018},
}
@inproceedings{ramshaw-marcus-1995-text,
  title = "Text Chunking using Transformation-Based Learning",
  author = "Ramshaw, Lance and Marcus, Mitch",
  booktitle = "Third Workshop on Very Large Corpora",
  year = "1995",
  url = "https://www.aclweb.org/anthology/W95-0107",
}
"""

SCHEMES = ("IOB1", "IOB2", "IOE1", "IOE2", "IOBES", "BILOU")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Seqeval(evaluate.Metric):
    def _info(self):
        tags = datasets.Sequence(datasets.Value("string", id="label"), id="sequence")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": tags, "references": tags}),
            homepage="https://github.com/chakki-works/seqeval",
            codebase_urls=["https://github.com/chakki-works/seqeval"],
            reference_urls=["https://www.clips.uantwerpen.be/conll2000/chunking/conlleval.txt"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs):
        """Add a batch of tag sequences, after checking sentences and tokens pair up one to one."""
        if predictions is not None and references is not None:
            if len(predictions) != len(references):
                raise ValueError(f"seqeval: {len(predictions)} predicted sentences but {len(references)} references")
            if len(predictions) == 0:
                raise ValueError("seqeval: no predictions to score (got empty lists)")
            for i, (pred, ref) in enumerate(zip(predictions, references, strict=True)):
                if len(pred) != len(ref):
                    raise ValueError(f"seqeval: sentence {i} has {len(pred)} predicted tags but {len(ref)} gold tags")
        return super().add_batch(predictions=predictions, references=references, **kwargs)

    def _compute(self, predictions, references, suffix=False, scheme=None, mode=None, sample_weight=None,
                 zero_division=0):
        if scheme is not None:
            if scheme not in SCHEMES:
                raise ValueError(f"seqeval: unknown scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
            scheme = getattr(importlib.import_module("seqeval.scheme"), scheme)
        with warnings.catch_warnings():  # no entities at all: seqeval averages an empty array (result 0)
            warnings.simplefilter("ignore", RuntimeWarning)
            report = classification_report(y_true=references, y_pred=predictions, suffix=suffix,
                                           output_dict=True, scheme=scheme, mode=mode,
                                           sample_weight=sample_weight, zero_division=zero_division)
        report.pop("macro avg")
        report.pop("weighted avg")
        overall = report.pop("micro avg")
        scores = {entity_type: {"precision": float(s["precision"]), "recall": float(s["recall"]),
                                "f1": float(s["f1-score"]), "number": int(s["support"])}
                  for entity_type, s in report.items()}
        scores["overall_precision"] = float(overall["precision"])
        scores["overall_recall"] = float(overall["recall"])
        scores["overall_f1"] = float(overall["f1-score"])
        scores["overall_accuracy"] = float(accuracy_score(y_true=references, y_pred=predictions))
        return scores
