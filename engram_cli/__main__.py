from engram_cli.cli.entry import main

main()
