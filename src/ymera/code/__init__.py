"""Code editor core: workspace-confined text edits, unified diffs and atomic bulk writes."""
