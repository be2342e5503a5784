"""Token classification (NER): placeholder until the task lands (registers nothing yet)."""
