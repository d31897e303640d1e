# Rules of stage group 'models'.


def models_targets():
    """Final outputs of this stage group that rule all requests."""
    return []
