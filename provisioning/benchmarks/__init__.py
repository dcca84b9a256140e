"""One module per `facelock bench` subcommand; each defines `command`."""
