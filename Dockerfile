# The router (control plane). The proxy is the stock OpenResty image (see docker-compose.yml).
FROM node:22-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/appgw
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY bin ./bin
COPY router ./router
COPY templates ./templates
COPY lua ./lua
COPY examples ./examples
ENV NODE_ENV=production PROXY_MODE=docker DATA_DIR=/var/lib/appgw NGINX_CONF_DIR=/etc/appgw/nginx LUA_DIR=/etc/appgw/lua RUN_DIR=/var/run/appgw
ENTRYPOINT ["bin/appgw"]
CMD ["serve"]
