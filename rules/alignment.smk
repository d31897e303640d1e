# Rules of stage group 'alignment' (WVS alignment analysis).


def alignment_targets():
    """Final outputs of this stage group that rule all requests."""
    return []
