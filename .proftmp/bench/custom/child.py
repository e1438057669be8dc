@custom
def child(i):
    return i
