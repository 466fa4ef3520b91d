"""Pure pieces of ingestion: what downstream refreshes are told about a batch."""

from ecom_insights.ingest import catalogue_changed, rejection_report


def test_a_changed_catalogue_forbids_rolling_features_forward():
    unchanged = {"products": {"inserted": 0, "updated": 0}, "sessions": {"inserted": 9}}
    assert not catalogue_changed(unchanged)
    assert catalogue_changed({"products": {"inserted": 0, "updated": 2}})
    assert catalogue_changed({"products": {"inserted": 1, "updated": 0}})
    assert not catalogue_changed({})


def test_the_report_names_rejected_files_and_missing_sources():
    files = [
        {"status": "landed", "path": "/in/sessions.csv", "message": None},
        {"status": "rejected", "path": "/in/customers.csv", "message": "customers.csv: empty file"},
        {"status": "skipped", "path": "/in/x.csv", "message": "already loaded"},
    ]
    report = rejection_report(files, ["customers"])
    assert report.splitlines() == [
        "1 file(s) rejected, nothing of them loaded:",
        "- customers.csv: empty file (/in/customers.csv)",
        "core has no rows for a source the pipeline needs:",
        "- customers: provide customers.csv (see docs/data-contract.md)",
    ]
    assert rejection_report(files[:1]) is None
