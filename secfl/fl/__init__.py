"""The embedded federated-learning engine: data, partitions, models, local training, server loop."""
