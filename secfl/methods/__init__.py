"""Federated-learning methods: each is a trainer, round hooks and an options table (``secfl.methods.base``)."""
