"""The local `evaluate` metric modules (evaluation/metrics/) against the libraries they wrap.

Each module must load by path with the Hub offline, give exactly the library's numbers on ordinary inputs and
on edge cases (empty prediction, perfect match, no entities, several references), and fail clearly when
predictions and references do not pair up.
"""

import sys

import evaluate
import numpy as np
import pytest
import sacrebleu
import seqeval.metrics
import seqeval.scheme
from rouge_score import rouge_scorer
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "evaluation"))
from local_metrics import METRICS_DIR, available, load_metric  # noqa: E402

NAMES = ["accuracy", "chrf", "confusion_matrix", "f1", "rouge", "sacrebleu", "seqeval"]
_LOADED = {}


def metric(name):
    """One loaded module per name for the whole file (loading imports the script once)."""
    if name not in _LOADED:
        _LOADED[name] = load_metric(name)
    return _LOADED[name]


# --- loading ------------------------------------------------------------------------------------------------

def test_available_lists_every_module():
    assert available() == NAMES


def test_unknown_name_fails_with_the_list_of_modules():
    with pytest.raises(ValueError, match="Available: accuracy, chrf"):
        load_metric("bleurt")


@pytest.mark.parametrize("name", NAMES)
def test_module_loads_by_path_offline_with_its_info(name, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(ROOT)
    module = evaluate.load(f"evaluation/metrics/{name}", keep_in_memory=True)  # a relative path, as in the docs
    assert isinstance(module, evaluate.Metric)
    assert module.description.strip() and module.citation.strip().startswith("@")
    assert module.features and "Args:" in module.inputs_description
    assert (METRICS_DIR / name / f"{name}.py").is_file()


# --- classification -----------------------------------------------------------------------------------------

LABEL_CASES = [
    ([0, 1, 1, 0, 1], [0, 1, 0, 0, 1]),
    ([1, 1, 1], [1, 1, 1]),  # perfect
    ([0, 0, 0, 0], [1, 1, 0, 1]),  # the positive class is never predicted
    ([2, 0, 1, 2, 2, 1], [2, 1, 1, 0, 2, 1]),  # three classes
    (["pos", "neg", "neg"], ["pos", "pos", "neg"]),  # string labels
]


@pytest.mark.parametrize(("pred", "ref"), LABEL_CASES)
def test_accuracy_equals_sklearn(pred, ref):
    assert metric("accuracy").compute(predictions=pred, references=ref)["accuracy"] == accuracy_score(ref, pred)
    count = metric("accuracy").compute(predictions=pred, references=ref, normalize=False)["accuracy"]
    assert count == accuracy_score(ref, pred, normalize=False) and isinstance(count, int)


def test_accuracy_with_sample_weight_and_numpy_input():
    pred, ref, weight = np.array([1, 0, 1, 1]), np.array([1, 1, 1, 0]), [0.5, 2.0, 1.0, 1.0]
    got = metric("accuracy").compute(predictions=pred, references=ref, sample_weight=weight)["accuracy"]
    assert got == pytest.approx(accuracy_score(ref, pred, sample_weight=weight))


@pytest.mark.parametrize(("pred", "ref"), LABEL_CASES)
@pytest.mark.parametrize("average", ["micro", "macro", "weighted", None])
def test_f1_precision_recall_equal_sklearn(pred, ref, average):
    got = metric("f1").compute(predictions=pred, references=ref, average=average)
    p, r, f, _ = precision_recall_fscore_support(ref, pred, average=average, zero_division=0.0)
    np.testing.assert_allclose([got["precision"], got["recall"], got["f1"]], [p, r, f])


def test_f1_binary_uses_pos_label():
    pred, ref = ["pos", "neg", "neg", "pos"], ["pos", "pos", "neg", "neg"]
    got = metric("f1").compute(predictions=pred, references=ref, pos_label="neg")
    p, r, f, _ = precision_recall_fscore_support(ref, pred, average="binary", pos_label="neg")
    assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f))
    assert metric("f1").compute(predictions=[0, 1, 1], references=[0, 1, 0])["f1"] == pytest.approx(2 / 3)


def test_f1_per_class_follows_labels_order():
    pred, ref = [2, 0, 1, 2], [2, 1, 1, 0]
    got = metric("f1").compute(predictions=pred, references=ref, average=None, labels=[2, 1, 0])
    _, _, f, _ = precision_recall_fscore_support(ref, pred, average=None, labels=[2, 1, 0], zero_division=0.0)
    assert got["f1"] == pytest.approx(f.tolist())


@pytest.mark.filterwarnings("ignore:A single label was found:UserWarning")  # sklearn, on the perfect case
@pytest.mark.parametrize(("pred", "ref"), LABEL_CASES)
@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
def test_confusion_matrix_equals_sklearn(pred, ref, normalize):
    got = metric("confusion_matrix").compute(predictions=pred, references=ref, normalize=normalize)
    np.testing.assert_array_equal(got["confusion_matrix"], confusion_matrix(ref, pred, normalize=normalize))


def test_confusion_matrix_with_explicit_labels():
    got = metric("confusion_matrix").compute(predictions=[0, 0, 1], references=[0, 1, 1], labels=[1, 0, 2])
    np.testing.assert_array_equal(got["confusion_matrix"], confusion_matrix([0, 1, 1], [0, 0, 1], labels=[1, 0, 2]))
    assert got["confusion_matrix"].shape == (3, 3)


# --- sequence labelling -------------------------------------------------------------------------------------

SEQ_CASES = [
    ([["B-PER", "I-PER", "O", "B-LOC"], ["O", "B-ORG"]], [["B-PER", "I-PER", "O", "O"], ["O", "B-ORG"]]),
    ([["B-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]]),  # perfect
    ([["O", "O", "O"]], [["B-PER", "I-PER", "O"]]),  # no predicted entity
    ([["O", "O"]], [["O", "O"]]),  # no entity at all
    ([["I-PER", "I-PER", "O", "B-LOC", "I-ORG"]], [["B-PER", "I-PER", "O", "B-LOC", "I-LOC"]]),  # invalid IOB2
]


def _seqeval_reference(ref, pred, **kwargs):
    report = seqeval.metrics.classification_report(ref, pred, output_dict=True, zero_division=0, **kwargs)
    micro = report.pop("micro avg")
    types = {k: v for k, v in report.items() if not k.endswith(" avg")}
    return micro, types


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the library averages an empty array when there is no entity
@pytest.mark.parametrize(("pred", "ref"), SEQ_CASES)
@pytest.mark.parametrize("strict", [False, True])
def test_seqeval_equals_the_library(pred, ref, strict):
    options = {"mode": "strict", "scheme": "IOB2"} if strict else {}
    got = metric("seqeval").compute(predictions=pred, references=ref, **options)
    lib_options = {"mode": "strict", "scheme": seqeval.scheme.IOB2} if strict else {}
    micro, types = _seqeval_reference(ref, pred, **lib_options)
    assert got["overall_precision"] == pytest.approx(micro["precision"])
    assert got["overall_recall"] == pytest.approx(micro["recall"])
    assert got["overall_f1"] == pytest.approx(micro["f1-score"])
    assert got["overall_f1"] == pytest.approx(seqeval.metrics.f1_score(ref, pred, zero_division=0, **lib_options))
    assert got["overall_accuracy"] == pytest.approx(seqeval.metrics.accuracy_score(ref, pred))
    assert {k for k in got if not k.startswith("overall_")} == set(types)
    for entity_type, scores in types.items():
        assert got[entity_type] == pytest.approx({"precision": scores["precision"], "recall": scores["recall"],
                                                  "f1": scores["f1-score"], "number": scores["support"]})


def test_seqeval_lenient_and_strict_differ_on_invalid_tags():
    pred, ref = [["I-PER", "I-PER", "O"]], [["B-PER", "I-PER", "O"]]
    lenient = metric("seqeval").compute(predictions=pred, references=ref)["overall_f1"]
    strict = metric("seqeval").compute(predictions=pred, references=ref, mode="strict", scheme="IOB2")["overall_f1"]
    assert (lenient, strict) == (1.0, 0.0)


def test_seqeval_suffix_tags():
    pred, ref = [["PER-B", "PER-I", "O"]], [["PER-B", "PER-I", "O"]]
    got = metric("seqeval").compute(predictions=pred, references=ref, suffix=True)
    assert got["PER"]["f1"] == 1.0 and got["overall_f1"] == 1.0


def test_seqeval_rejects_unequal_sentence_lengths_and_unknown_schemes():
    with pytest.raises(ValueError, match="sentence 1 has 1 predicted tags but 2 gold tags"):
        load_metric("seqeval").compute(predictions=[["O"], ["O"]], references=[["O"], ["O", "O"]])
    with pytest.raises(ValueError, match="unknown scheme 'BIO'"):
        load_metric("seqeval").compute(predictions=[["O"]], references=[["O"]], mode="strict", scheme="BIO")


# --- ROUGE --------------------------------------------------------------------------------------------------

TEXT_CASES = [
    (["the cat sat on the mat", "a quick brown fox"], ["the cat was sitting on the mat", "the quick brown fox jumps"]),
    (["the cat sat on the mat"], ["the cat sat on the mat"]),  # perfect
    ([""], ["the cat sat on the mat"]),  # empty prediction
    (["Ministers resigned.\nThe vote failed."], ["The minister resigns.\nA vote is failing today."]),  # stemming, lines
    (["Le chat est assis."], ["Le chat s'est assis."]),
]
TYPES = ["rouge1", "rouge2", "rougeL", "rougeLsum"]


@pytest.mark.parametrize(("pred", "ref"), TEXT_CASES)
@pytest.mark.parametrize("use_stemmer", [False, True])
def test_rouge_equals_rouge_score(pred, ref, use_stemmer):
    scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=use_stemmer)
    library = [scorer.score(r, p) for p, r in zip(pred, ref, strict=True)]
    got = metric("rouge").compute(predictions=pred, references=ref, use_stemmer=use_stemmer)
    per_example = metric("rouge").compute(predictions=pred, references=ref, use_stemmer=use_stemmer,
                                          use_aggregator=False)
    for t in TYPES:
        assert got[t] == pytest.approx(np.mean([s[t].fmeasure for s in library]))
        assert per_example[t] == pytest.approx([s[t].fmeasure for s in library])


def test_rouge_edge_values_and_precision_recall():
    perfect = metric("rouge").compute(predictions=["the cat sat"], references=["the cat sat"])
    assert all(v == 1.0 for v in perfect.values())
    empty = metric("rouge").compute(predictions=[""], references=["the cat sat"])
    assert all(v == 0.0 for v in empty.values())
    for score in ("precision", "recall"):
        got = metric("rouge").compute(predictions=["the cat"], references=["the cat sat on the mat"],
                                      rouge_types=["rouge1"], score=score)["rouge1"]
        assert got == pytest.approx({"precision": 1.0, "recall": 2 / 6}[score])


def test_rouge_several_references_take_the_best():
    pred, refs = ["the cat sat"], [["a dog ran away", "the cat sat down"]]
    got = metric("rouge").compute(predictions=pred, references=refs, rouge_types=["rouge1", "rougeL"])
    best = rouge_scorer.RougeScorer(["rouge1", "rougeL"]).score_multi(refs[0], pred[0])
    assert got == pytest.approx({t: best[t].fmeasure for t in ("rouge1", "rougeL")})


def test_rouge_custom_tokenizer_for_other_scripts():
    pred, ref = ["猫が座った"], ["猫が座った"]
    assert metric("rouge").compute(predictions=pred, references=ref, rouge_types=["rouge1"])["rouge1"] == 0.0
    got = metric("rouge").compute(predictions=pred, references=ref, rouge_types=["rouge1"], tokenizer=list)
    assert got["rouge1"] == 1.0


def test_rouge_never_needs_nltk_data(monkeypatch):
    """rougeLsum splits on newlines; nltk.sent_tokenize (which needs the punkt download) is never called."""
    import nltk

    def refuse(*args, **kwargs):
        raise AssertionError("nltk.sent_tokenize was called: it would need a download")

    monkeypatch.setattr(nltk, "sent_tokenize", refuse)
    got = load_metric("rouge").compute(predictions=["One. Two.\nThree."], references=["One two.\nThree."],
                                       use_stemmer=True)
    assert 0 < got["rougeLsum"] <= 1


# --- BLEU and chrF ------------------------------------------------------------------------------------------

BLEU_CASES = [
    (["The cat sat on the mat.", "It rained all day in Paris."],
     [["The cat was sitting on the mat."], ["It rained the whole day in Paris."]]),
    (["The cat sat on the mat."], [["The cat sat on the mat."]]),  # perfect
    (["", "It rained all day."], [["The cat sat."], ["It rained all day."]]),  # an empty prediction
    (["the cat sat on the mat ."], [["The cat sat on the mat."]]),  # lower-cased and pre-tokenised
    (["The cat sat on the mat.", "Rain."], [["A cat sat on a mat.", "The cat is on the mat."],
                                           ["It rained.", "Rain all day."]]),  # two references each
]


def _streams(refs):
    width = max(len(r) for r in refs)
    return [[r[k] if k < len(r) else None for r in refs] for k in range(width)]


@pytest.mark.parametrize(("pred", "refs"), BLEU_CASES)
@pytest.mark.parametrize("options", [{}, {"tokenize": "none"}, {"tokenize": "intl", "lowercase": True},
                                     {"tokenize": "char"}, {"smooth_method": "floor", "smooth_value": 0.1},
                                     {"use_effective_order": True}])
def test_sacrebleu_equals_corpus_bleu(pred, refs, options):
    got = metric("sacrebleu").compute(predictions=pred, references=refs, force=True, **options)
    library = sacrebleu.corpus_bleu(pred, _streams(refs), force=True, **options)
    assert got["score"] == pytest.approx(library.score)
    assert (got["counts"], got["totals"], got["sys_len"], got["ref_len"]) == (
        library.counts, library.totals, library.sys_len, library.ref_len)
    assert got["bp"] == pytest.approx(library.bp) and got["precisions"] == pytest.approx(library.precisions)
    assert got["signature"].startswith(f"nrefs:{len(refs[0])}|")


def test_sacrebleu_edge_values_and_single_string_references():
    perfect = metric("sacrebleu").compute(predictions=["The cat sat on the mat."],
                                          references=["The cat sat on the mat."])  # one reference as a string
    assert perfect["score"] == pytest.approx(100.0)
    assert metric("sacrebleu").compute(predictions=[""], references=[["The cat sat."]])["score"] == 0.0


def test_sacrebleu_variable_number_of_references():
    pred, refs = ["The cat sat on the mat.", "Rain."], [["A cat sat on a mat.", "The cat is on the mat."], ["Rain."]]
    got = metric("sacrebleu").compute(predictions=pred, references=refs)
    assert got["score"] == pytest.approx(sacrebleu.corpus_bleu(pred, _streams(refs)).score)
    assert got["signature"].startswith("nrefs:var|")


def test_sacrebleu_refuses_tokenizers_that_download():
    with pytest.raises(ValueError, match="downloads a SentencePiece model"):
        load_metric("sacrebleu").compute(predictions=["a"], references=[["a"]], tokenize="flores200")


@pytest.mark.parametrize(("pred", "refs"), BLEU_CASES)
@pytest.mark.parametrize("options", [{}, {"word_order": 2}, {"lowercase": True, "beta": 1}, {"whitespace": True},
                                     {"eps_smoothing": True}])
def test_chrf_equals_corpus_chrf(pred, refs, options):
    got = metric("chrf").compute(predictions=pred, references=refs, **options)
    library = sacrebleu.metrics.CHRF(**options).corpus_score(pred, _streams(refs))
    assert got["score"] == pytest.approx(library.score)
    assert got["word_order"] == options.get("word_order", 0)


def test_chrf_edge_values():
    assert metric("chrf").compute(predictions=["The cat."], references=[["The cat."]])["score"] == pytest.approx(100)
    assert metric("chrf").compute(predictions=[""], references=["The cat sat."])["score"] == 0.0


# --- inputs that do not pair up -----------------------------------------------------------------------------

GOOD_INPUTS = {
    "accuracy": ([1, 0, 1], [1, 1, 1]),
    "f1": ([1, 0, 1], [1, 1, 1]),
    "confusion_matrix": ([1, 0, 1], [1, 1, 1]),
    "seqeval": ([["O"], ["B-PER"], ["O"]], [["O"], ["B-PER"], ["B-LOC"]]),
    "rouge": (["a b", "c", "d"], ["a b", "c d", "d"]),
    "sacrebleu": (["a b", "c", "d"], [["a b"], ["c d"], ["d"]]),
    "chrf": (["a b", "c", "d"], [["a b"], ["c d"], ["d"]]),
}


@pytest.mark.parametrize("name", NAMES)
def test_mismatched_lengths_fail_clearly(name):
    pred, ref = GOOD_INPUTS[name]
    with pytest.raises(ValueError, match=rf"^{name}: 3 \w+ ?\w* but 2 references$"):
        load_metric(name).compute(predictions=pred, references=ref[:2])
    with pytest.raises(ValueError, match="no predictions to score"):
        load_metric(name).compute(predictions=[], references=[])


@pytest.mark.parametrize("name", NAMES)
def test_batches_give_the_same_result_as_one_call(name):
    pred, ref = GOOD_INPUTS[name]
    whole = load_metric(name).compute(predictions=pred, references=ref)
    batched = load_metric(name)
    batched.add_batch(predictions=pred[:2], references=ref[:2])
    batched.add(prediction=pred[2], reference=ref[2])
    got = batched.compute()
    assert got.keys() == whole.keys()
    for key, value in whole.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(got[key], value)
        else:
            assert got[key] == value
