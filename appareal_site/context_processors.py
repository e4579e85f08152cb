RESEARCHERS_GROUP = "researchers"


def roles(request):
    user = getattr(request, "user", None)
    is_researcher = bool(
        user and user.is_authenticated and (user.is_staff or user.groups.filter(name=RESEARCHERS_GROUP).exists())
    )
    return {"is_researcher": is_researcher}
