"""Analysis over the results table (docs/architecture.md): the paper table and research-question tables, gains with
uncertainty, statistics, plots."""
