"""The offline runtime: ``leadflow replay`` runs the pure engine over files, in file order."""
