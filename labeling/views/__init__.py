"""Pages and API views of the labeling app: they validate, call one service or selector, render."""
