"""The benchmark report: normalised scores, IQMs with bootstrap CIs, group aggregates, probability
of improvement, tuning curves; CSV tables, PNG figures and one self-contained report.html."""
