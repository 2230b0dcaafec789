"""Published federated-learning methods implemented on the secfl engine (FedBAT, ...)."""
