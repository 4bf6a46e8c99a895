"""The web portal: one site for applicants, reviewers and officers, on the services' public APIs."""
