"""One module per `facelock` subcommand; each defines `command`."""
