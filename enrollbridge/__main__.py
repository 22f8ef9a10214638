from enrollbridge.cli import main

main()
