# Rules of stage group 'evaluate'.


def evaluate_targets():
    """Final outputs of this stage group that rule all requests."""
    return []
