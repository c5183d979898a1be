"""Data: dataset readers (`open_dataset("reader:path")`), degradations, prompts, synthetic scenes and
SAM-ready transforms. Submodules are imported where needed so that `garasam --help` stays fast."""
