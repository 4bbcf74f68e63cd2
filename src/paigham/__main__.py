from paigham.cli.main import app

app()
