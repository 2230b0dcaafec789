"""audit.md opens with a verdict a reviewer can sign and the provenance of the numbers."""

from __future__ import annotations

from secfl.audit.privacy.report import write_privacy_report

BASE = {"defense": "x", "accuracy": 0.9, "delta": 1e-5, "accountant": "pld", "rounds": 5,
        "options": {"seed": 3, "confidence": 0.95}, "epsilon_server": None,
        "membership": {"loss_threshold": {"auc": 0.51, "tpr_at_1pct_fpr": 0.01, "tpr_at_01pct_fpr": 0.0},
                       "bounds": {"auc": 0.9, "tpr_at_1%": 0.3}},
        "inversion": {"examples": 8, "clients": 1, "psnr": 25.0, "psnr_mean": 12.0, "psnr_black": 10.0, "ssim": 0.9,
                      "label_accuracy": 1.0}}
AUDIT = {"epsilon_lower_bound": 0.4, "audit_ceiling": 1.2, "correct": 9, "guesses": 10, "sampled": 50,
         "canaries": 100}


def verdicts(tmp_path, results):
    text = write_privacy_report(results, tmp_path).read_text()
    head = text.split("## Measurements")[0]
    return head, text


def test_the_verdict_says_pass_weak_fail_and_none_in_words(tmp_path):
    results = [{**BASE, "name": "weak", "epsilon_claimed": 3.0, "audit": AUDIT},
               {**BASE, "name": "strong", "epsilon_claimed": 1.0, "audit": {**AUDIT, "audit_ceiling": 4.0}},
               {**BASE, "name": "broken", "epsilon_claimed": 0.2, "audit": {**AUDIT, "failed": True}},
               {**BASE, "name": "plain", "epsilon_claimed": None, "audit": {"skipped": "canaries = 0"},
                "inversion": {"skipped": "the group holds 320 examples (> max_inversion_examples = 256)"}}]
    head, text = verdicts(tmp_path, results)
    assert head.index("## Verdict") < head.index("## Provenance") < text.index("## Measurements")
    weak = head.split("**weak.**")[1].split("**strong.**")[0]
    assert "Not contradicted: the one-run lower bound is 0.4" in weak and "weak evidence" in weak
    assert "could show up to 4" in head.split("**strong.**")[1].split("**broken.**")[0]
    assert "**FAILED: the canaries prove epsilon >= 0.4 at 95% confidence" in head
    plain = head.split("**plain.**")[1]
    assert "claims no differential privacy" in plain
    assert "- gradient inversion: the group holds 320 examples" in plain and "raise PrivacyAuditOptions" in plain
    assert "- epsilon audit: canaries = 0. To run it: pass --canaries M" in plain
    assert "25.0 dB against 12.0 dB for the mean image: recognisable" in weak
    assert "accountant pld, delta 1e-05, audit seed 3" in head and "- secfl " in head
