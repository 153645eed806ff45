"""What training, serving, clients and review share: catalogs, the prompt contract, markup,
Chinese conventions, terms, translation memory, the adapter registry, base models and settings.
Nothing here imports service, training, clients or review."""
