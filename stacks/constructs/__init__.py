"""One construct per logical unit of the pipeline; the stacks only compose them."""
