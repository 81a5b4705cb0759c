"""Report: seaborn figures and a self-contained report.html plus report.md."""
