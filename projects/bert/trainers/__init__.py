"""BERT trainers; `projects.bert` declares them by module, so each is imported when a config first names it."""
