"""Reading an account's figures back from a published claims file with its epoch report."""

from __future__ import annotations

import json

import pytest

from tests.accounting.simnodes import SimNode, announce, cosigned_round, directory_of
from zoo_node.coordinator.report import ReportError, account_figures, read_report
from zoo_node.coordinator.settlement import EpochTerms, settle_epoch, write_claims_file


def test_the_claims_file_carries_the_report_and_the_chain_reader_still_reads_it(tmp_path) -> None:
    from zoo_node.chain.proofs import load_claims

    a, b = SimNode.new(gpu_model="cpu", gpu_count=0), SimNode.new()
    settlement = settle_epoch(
        EpochTerms(3, 1, 1000, 60.0, {"stage/0": 10}),
        announce(cosigned_round(3, "stage/0", 1, {a: 3, b: 1}, seconds=30.0)),
        directory_of([a, b], [a, b], 3),
    )
    path = write_claims_file(settlement, tmp_path)
    claims = load_claims(path.as_uri())  # the chain's reader: amounts and proofs
    assert claims.root == settlement.tree.root and claims.check(a.owner).amount == 750
    report = read_report(path.as_uri())
    mine = account_figures(report, a.owner.lower(), claimed_total=0)
    assert mine["amount_wei"] == "750" and mine["verified_flops"] == "30" and not mine["claimed"]
    assert mine["cpu_hours"] == pytest.approx(30 / 3600) and mine["gpu_hours"] == 0.0
    assert account_figures(report, a.owner, claimed_total=750)["claimed"]
    stranger = account_figures(report, SimNode.new().owner, claimed_total=0)
    assert stranger["amount_wei"] == "0" and not stranger["claimed"] and stranger["mfu"] is None


def test_unreadable_or_foreign_reports_are_clear_errors(tmp_path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(ReportError, match="cannot read"):
        read_report(str(missing))
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        read_report(garbage.as_uri())
    future = tmp_path / "future.json"
    future.write_text(json.dumps({"report": {"version": 2}}))
    with pytest.raises(ReportError, match="not version 1"):
        read_report(str(future))
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"version": 1, "claims": {}}))
    assert read_report(str(plain)) is None
    with pytest.raises(ReportError, match="unsupported location"):
        read_report("ftp://example.org/x.json")
