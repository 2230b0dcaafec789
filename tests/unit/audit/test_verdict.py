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
GAUSSIAN = {"epsilon": 2.9, "epsilon_low": 2.4, "epsilon_high": 3.6, "confidence": 0.99, "noise_multiplier": 1.4,
            "noise_multiplier_claimed": 1.35, "signal_observations": 600, "detectable_epsilon": 4.2,
            "detectable_noise_multiplier": 1.1, "flagged": False}


def verdicts(tmp_path, results):
    text = write_privacy_report(results, tmp_path).read_text()
    head = text.split("## Epsilon")[0]
    return head, text


def test_the_verdict_says_pass_weak_fail_and_none_in_words(tmp_path):
    results = [{**BASE, "name": "weak", "epsilon_claimed": 3.0, "audit": AUDIT},
               {**BASE, "name": "strong", "epsilon_claimed": 1.0, "audit": {**AUDIT, "audit_ceiling": 4.0}},
               {**BASE, "name": "broken", "epsilon_claimed": 0.2, "audit": {**AUDIT, "failed": True}},
               {**BASE, "name": "plain", "epsilon_claimed": None, "audit": {"skipped": "canaries = 0"},
                "inversion": {"skipped": "the group holds 320 examples (> max_inversion_examples = 256)"}}]
    head, text = verdicts(tmp_path, results)
    assert head.index("## Verdict") < head.index("## Provenance") < text.index("## Epsilon") < text.index("## Attacks")
    weak = head.split("**weak.**")[1].split("**strong.**")[0]
    assert "Not contradicted. The assumption-free one-run lower bound is 0.4" in weak
    assert "could never prove more than 1.2, below the claim, so on its own it cannot catch" in weak
    assert "could never prove more than 4." in head.split("**strong.**")[1].split("**broken.**")[0]
    assert "**FAILED: the canaries prove epsilon >= 0.4 at 95% confidence" in head
    plain = head.split("**plain.**")[1]
    assert "claims no differential privacy" in plain
    assert "- gradient inversion: the group holds 320 examples" in plain and "raise PrivacyAuditOptions" in plain
    assert "- epsilon audit: canaries = 0. To run it: pass --canaries M" in plain
    assert "25.0 dB against 12.0 dB for the mean image: recognisable" in weak
    assert "accountant pld, delta 1e-05, audit seed 3" in head and "- secfl " in head


def test_the_verdict_gives_the_estimate_its_power_and_the_negative_control(tmp_path):
    control = {**AUDIT, "epsilon_claimed": 3.0, "epsilon_actual": 11.6, "flagged": True,
               "gaussian": {**GAUSSIAN, "epsilon": 11.9, "flagged": True}}
    missed = {**control, "flagged": False, "gaussian": {**GAUSSIAN, "epsilon": 3.2}}
    results = [{**BASE, "name": "good", "epsilon_claimed": 3.0, "audit": {**AUDIT, "gaussian": GAUSSIAN},
                "negative_control": control},
               {**BASE, "name": "bad", "epsilon_claimed": 3.0,
                "audit": {**AUDIT, "flagged": True, "gaussian": {**GAUSSIAN, "epsilon": 8.0, "epsilon_low": 6.5,
                                                                 "flagged": True}}, "negative_control": missed},
               {**BASE, "name": "robust", "epsilon_claimed": 3.0,
                "audit": {**AUDIT, "gaussian": {"skipped": "r: needs exactly one noise stage with noise_multiplier= "
                                                           "(['ddgauss', 'gaussian_noise']); found 2"}}}]
    head, text = verdicts(tmp_path, results)
    good = head.split("**good.**")[1].split("**bad.**")[0]
    assert "Not contradicted: the canaries measure epsilon 2.9, between 2.4 and 3.6 at 99% confidence" in good
    assert "catches, with 95% probability, a mechanism whose epsilon is 4.2 or more" in good
    assert "half the noise multiplier (true epsilon 11.6, still claimed 3) was caught (estimated 11.9)" in good
    bad = head.split("**bad.**")[1].split("**robust.**")[0]
    assert "**FLAGGED: the canaries measure epsilon 8" in bad and "was **not** caught" in bad
    robust = head.split("**robust.**")[1]
    assert "- Gaussian estimate: r: needs exactly one noise stage" in robust
    table = text.split("## Epsilon")[1].split("## Attacks")[0]
    assert "| good | 3.00 |" in table and "2.90 [2.40, 3.60]" in table and "caught (true 11.60, estimated 11.90)" in table
    assert "**FLAGGED: 8.00 [6.50, 3.60] > claim**" in table and "**NOT caught**" in table
    assert "`good/control-run`" in head
