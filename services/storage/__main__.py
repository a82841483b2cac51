from lumenal.storage.server import main

main()
