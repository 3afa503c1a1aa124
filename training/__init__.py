"""Desktop training: HAM10000 loading, lesion-grouped splits, transfer learning, reports."""
