"""Per-task metrics: recorded by whoever runs a task (record.py, light), summarised at the
end of a run and by ``qmetrics`` (summary.py), plotted for reports (plots.py)."""
