"""The use cases that the command line and the service both call: index, query, evaluate, export, ann, plot."""
