from semievol_core.data import Record
from semievol_core.evaluate import accuracy_report


def test_accuracy_failures_and_per_category():
    recs = [Record("1", "q", ["x", "y"], "A", "physics"), Record("2", "q", ["x", "y"], "B", "physics"),
            Record("3", "q", ["x", "y"], "A", "biology"), Record("4", "q", ["x", "y"], "B", None)]
    report = accuracy_report(["A", None, "B", "B"], recs, "choice")
    assert report["n"] == 4 and report["accuracy"] == 0.5 and report["extraction_failure_rate"] == 0.25
    assert report["per_category"] == {"biology": {"n": 1, "accuracy": 0.0}, "physics": {"n": 1 + 1, "accuracy": 0.5}}


def test_no_category_column_no_breakdown():
    recs = [Record("1", "q", None, "3.0")]
    assert "per_category" not in accuracy_report(["3.01"], recs, "number")
