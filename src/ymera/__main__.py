from ymera.cli.main import app

app(prog_name="ymera")
