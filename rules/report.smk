# Rules of stage group 'report'.


def report_targets():
    """Final outputs of this stage group that rule all requests."""
    return []
